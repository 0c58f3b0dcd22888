"""Results on disk: metrics (accuracy, confusion matrix), plots and run folders.

Reads results (arrays, records, histories); never imports a model.
"""
