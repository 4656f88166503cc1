"""Campaign plans: who gets which message when, under rules kept as data, and their backtest."""
