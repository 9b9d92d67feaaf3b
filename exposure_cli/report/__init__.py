"""Report schema, writers (Parquet/CSV/JSONL), overlays and the HTML page."""
