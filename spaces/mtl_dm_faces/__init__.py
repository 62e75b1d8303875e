"""The MTL-DM faces demo: `app.py` is the Space's entry point and also renders the combined app's tab."""
