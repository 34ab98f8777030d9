"""MongoDB as source and sink, on PyMongo's async API (`AsyncMongoClient`)."""
