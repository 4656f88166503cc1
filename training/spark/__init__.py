"""The batch commands on Apache Spark (``--engine spark``): the pandas builders run per partition."""
