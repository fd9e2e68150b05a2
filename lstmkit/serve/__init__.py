"""Serving trained models over HTTP: the app (:mod:`lstmkit.serve.app`), micro-batching,
streaming sessions, limits, the web page (``static/``) and the uvicorn runner
(:mod:`lstmkit.serve.server`). ``lstmkit serve --model DIR`` starts it."""
