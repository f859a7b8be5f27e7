"""The server around the admission app: its parts built from the config, its connections, its processes.

``setup`` builds the trust root, policies, engine and cluster integration; ``connections`` guards
each connection; ``workers`` runs uvicorn in supervised worker processes.
"""
