"""Vigil's API: ``create_app`` builds the Flask application."""
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api import auth, content, db, faults, health, logs, metrics, migrate, users
from api.config import load_config
from api.extensions import init_api, init_jwt
from api.requests import register_request_checks


def create_app(config=None):
    """Build the app from ``VIGIL_*`` variables, overridden by the ``config`` mapping."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, config)
    db.init_app(app)
    # Before telemetry's init: faults appends its own readiness check to this list.
    app.extensions["vigil_readiness_checks"] = [db.check_database, migrate.check_schema_current]

    logs.init_app(app)
    metrics.init_app(app)
    faults.init_app(app)

    db.register_request_hooks(app)
    register_request_checks(app)
    init_jwt(app)
    api = init_api(app)  # also routes every error through api.errors
    for blueprint in (auth.bp, users.bp, content.bp):
        api.register_blueprint(blueprint)
        db.CONNECT_UP_FRONT.add(blueprint.name)
    app.register_blueprint(health.bp)
    app.register_blueprint(migrate.bp)
    app.register_blueprint(users.cli)
    proxies = int(app.config["PROXY_COUNT"])
    if proxies:
        # Outermost, so every later step (access line, logs) sees the client's address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    return app
