"""The Chorus review console (Streamlit): ``chorus console`` runs ``streamlit run dashboards/app.py``.

``app.py`` is the entry point (identity, navigation); ``views/`` holds one thin file per page;
``data.py`` is the only module that reads or writes the store (cached reads over
:mod:`stream.review`); ``render.py`` turns hostile post content into safe text and charts;
``panels.py`` holds the decision and claim controls the pages share; ``auth.py`` says who is
reviewing. See ``dashboards/README.md``.
"""
