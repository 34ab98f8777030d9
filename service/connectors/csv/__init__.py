"""CSV files as source and sink: a folder of `TABLE.csv` files, or one `.csv` file."""
