"""The client portal (Streamlit, multipage). Its pages arrive with the portal issue; faces call
``agency.services`` only."""

__all__: list[str] = []
