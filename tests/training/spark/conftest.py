"""The Spark tests' one ``local[2]`` session, shared by the modules of this folder (starting one takes seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="package")
def spark() -> Iterator[SparkSession]:
    """A ``local[2]`` session running this interpreter's Python (`training.spark.session.spark_session`)."""
    pytest.importorskip("pyspark")
    from training.spark.session import spark_session

    session = spark_session(master="local[2]")
    yield session
    session.stop()
