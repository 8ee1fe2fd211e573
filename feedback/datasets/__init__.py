"""Fine-tuning datasets from the reviewed feedback log: SFT, DPO and KTO exports.

`export.export_dataset` is the one entry point (the CLI, the console's button and the scheduled
Celery task all call it). The steps are plain modules: `build` turns reviewed answers into
examples, `redact` removes personal data and secrets, `clean` drops duplicates and splits,
`schemas` validates every line, and `export` writes a versioned directory with a card and a
manifest.
"""
