"""CSV files as source and sink: a folder of `TABLE.csv` files, or one `.csv` file."""

from service.connectors.csv.sink import CsvSink
from service.connectors.csv.source import CsvSource

__all__ = ["CsvSink", "CsvSource"]
