"""Gradio demos of zoo's methods: `spaces.app` combines them, one tab per method.

Each `spaces/<method>/` folder is also a standalone Hugging Face Space. This file makes
`spaces` a regular package, so it takes precedence over any installed package of that name
when the repository root comes before site-packages on sys.path.
"""
