"""etl."""


def __getattr__(name: str):
    """`etl.load_job(path)`: the notebook-facing job (etl.api.open_job), imported on first use so
    that `import etl.<module>` stays light and free of import cycles."""
    if name == "load_job":
        from etl.api import open_job

        return open_job
    raise AttributeError(f"module 'etl' has no attribute {name!r}")
