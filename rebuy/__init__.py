"""rebuy: recommendation and repurchase prediction for e-commerce stores."""

__version__ = "0.1.0"
