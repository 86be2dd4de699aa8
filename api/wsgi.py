"""The WSGI entry point gunicorn serves: ``gunicorn -c gunicorn.conf.py api.wsgi:app``."""
from api import create_app

app = create_app()
