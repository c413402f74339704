"""The Streamlit app: a thin client of `search`."""
