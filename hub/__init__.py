"""The released files and how they are fetched: the one table of released checkpoints (:mod:`hub.released`),
downloads with progress and verification (:mod:`hub.fetching`), the download command (:mod:`hub.download`,
``python -m hub.download`` still works), the hints naming the command that fetches a missing file
(:mod:`hub.download_hints`) and the first-run fetch of missing defaults (:mod:`hub.first_run`)."""
