"""The control API of the running agent: HTTP on loopback (or a Unix socket), token auth.

app.py          the machinery: Route table, auth, parsing, JSON errors
routes.py       the endpoints (one handler each) and ROUTES
models.py       request and response models (also the OpenAPI schemas)
openapi.py      the OpenAPI 3.1 document, derived from the routes and models
events.py       server-sent events hub (a pipeline listener)
sql.py          read-only SQL with a row and a time limit
config_view.py  the config with secrets masked
auth.py         the token file
server.py       sockets: TCP, Unix, api.addr
"""
