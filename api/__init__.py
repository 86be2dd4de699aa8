"""Vigil's API: ``create_app`` builds the Flask application."""
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api.config import load_config


def create_app(config=None):
    """Build the app from ``VIGIL_*`` variables, overridden by the ``config`` mapping."""
    # Imported here, so `import api.config` (gunicorn.conf.py) loads nothing else: the
    # metrics library must not be imported before gunicorn.conf.py chose its directory.
    from api import auth, content, db, faults, health, migrate, telemetry, tokens, users
    from api.extensions import init_api, init_jwt
    from api.requests import register_request_checks

    app = Flask(__name__, instance_relative_config=True)
    load_config(app, config)
    db.init_app(app)
    app.extensions["vigil_readiness_checks"] = [db.check_database, migrate.check_schema_current]
    # Order matters: telemetry's hooks run first (request ids, request timing), the fault
    # switches next (injected latency is timed); teardowns run in reverse, so telemetry
    # reads the pool after the database's teardown returned the connection.
    telemetry.init_app(app)
    faults.init_app(app)
    api_blueprints = (auth.bp, users.bp, content.bp)
    db.register_request_hooks(app, connect_up_front=[bp.name for bp in api_blueprints])
    register_request_checks(app)
    init_jwt(app)
    tokens.init_app(app)
    api = init_api(app)
    for blueprint in api_blueprints:
        api.register_blueprint(blueprint)
    app.register_blueprint(health.bp)
    app.register_blueprint(migrate.bp)
    app.register_blueprint(users.cli)
    proxies = int(app.config["PROXY_COUNT"])
    if proxies:
        # Outermost, so every later step (access line, logs) sees the client's address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    return app
