import schemas  # noqa: F401  (refuses stale compiled modules: schemas/native.py)
