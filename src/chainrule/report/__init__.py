"""Results on disk: metrics (accuracy, confusion matrix), plots, run folders and their
pages (``report.html``, and one page comparing runs).

Reads results (arrays, records, histories); never imports a model.
"""
