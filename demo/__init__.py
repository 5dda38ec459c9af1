"""The local web demo (``python app.py``), as a package.

* :mod:`demo.config`: what is served (:class:`~demo.config.AppConfig`, the models found in a checkpoint
  folder, the page's limits).
* :mod:`demo.state`: the models and files of a running app (:class:`~demo.state.AppState`: pipelines from a
  :class:`pipeline.registry.PipelineCache`, style thumbnails, a work folder).
* :mod:`demo.handlers`: what the page's buttons do, as plain functions of an ``AppState`` (photos, videos,
  thumbnails); importable and tested without Gradio.
* :mod:`demo.released`: the released styles not in the checkpoint folder, listed with a download marker and
  fetched when picked.
* :mod:`demo.page`: the Gradio page that wires the handlers to its controls (the only module that needs Gradio).

``app.py`` is the entry point (command line, first-run download, start-up) and re-exports the public names.
"""
