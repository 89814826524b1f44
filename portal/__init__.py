"""The client portal (Streamlit, multipage): ``portal/app.py`` is the router (``st.navigation`` by
role), pages live in ``portal/pages/<role>/``, shared pieces in ``portal/components``. Pages call
``services`` only, with the signed-in principal. Serve it with ``agency portal``."""

__all__: list[str] = []
