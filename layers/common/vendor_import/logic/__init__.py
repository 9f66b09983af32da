"""Business logic: plain Python with injected clients (no handler, no global AWS client)."""
