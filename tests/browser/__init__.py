"""Real-browser end-to-end tests: Playwright drives Debian chromium against `streamlit run app.py`."""
