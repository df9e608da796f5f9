"""The book's ``common`` package on cnn_xp (``common.layers``, ``.util``, ``.functions``,
``.gradient``, ``.optimizer``, ``.trainer``)."""
