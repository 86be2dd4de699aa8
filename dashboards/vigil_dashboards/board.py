"""Assemble a dashboard from rows of panels with grafana-foundation-sdk, and write it as JSON.

Layout is the SDK's own: rows, then panels left to right by width. Panel ids are numbered in
reading order, so links and tests can name a panel by its title and never by a number.
"""
import json

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from .panels import PROMETHEUS

# The schemaVersion Grafana 12.2 writes: DASHBOARD_SCHEMA_VERSION = 42 in Grafana's
# public/app/features/dashboard/state/DashboardMigrator.ts and LATEST_VERSION = 42 in
# apps/dashboard/pkg/migration/schemaversion/migrations.go (migration v42: grafana/grafana#110517);
# defaultDashboard.schemaVersion of the @grafana/schema npm package is 42 at 12.2.0 and 12.2.1
# (41 at 12.1.0), and a test reads it. The SDK build pinned for Grafana 12 still emits 41, so it
# is set here; the one step from 41 to 42 (hideFrom.viz implies hideFrom.tooltip) is honoured by
# a test. ADR 0025.
GRAFANA_SCHEMA_VERSION = 42


class PrometheusAnnotation(model.AnnotationQuery):
    """An annotation from a PromQL query, with the fields Grafana's Prometheus annotation support
    reads (packages/grafana-prometheus/src/annotations.ts) that the SDK's generic model lacks."""

    def __init__(self, name, expr, title, text="", colour="blue", tag_keys="",
                 use_value_for_time=False, step="1m"):
        super().__init__(name=name, datasource=PROMETHEUS, enable=True, icon_color=colour,
                         expr=expr)
        self.title_format, self.text_format = title, text
        self.tag_keys, self.use_value_for_time, self.step = tag_keys, use_value_for_time, step

    def to_json(self):
        payload = super().to_json()
        payload.update({"titleFormat": self.title_format, "textFormat": self.text_format,
                        "tagKeys": self.tag_keys, "useValueForTime": self.use_value_for_time,
                        "step": self.step})
        return payload


def datasource_variables():
    return [
        dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        .current(model.VariableOption(text="Prometheus", value="prometheus", selected=True)),
        dash.DatasourceVariable("longterm").label("Prometheus long-term").type("prometheus")
        .current(model.VariableOption(text="Prometheus long-term", value="prometheus-longterm",
                                      selected=True)),
        dash.DatasourceVariable("loki").label("Loki").type("loki")
        .current(model.VariableOption(text="Loki", value="loki", selected=True)),
    ]


def query_variable(name, definition, label=None, multi=True):
    """A variable whose values come from `label_values(...)`; "All" means every value."""
    return (dash.QueryVariable(name).label(label or name).datasource(PROMETHEUS)
            .query(definition).multi(multi).include_all(multi)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .current(model.VariableOption(text="All", value="$__all", selected=True)))


def constant(name, value):
    return dash.ConstantVariable(name).value(value)


def assemble(uid, title, description, rows, *, variables=(), annotations=(), links=()):
    """The dashboard model: fixed uid, tag `vigil`, UTC, shared crosshair, 30 s refresh."""
    builder = (dash.Dashboard(title).uid(uid).description(description).tags(["vigil"])
               .timezone("utc").editable().tooltip(model.DashboardCursorSync.CROSSHAIR)
               .refresh("30s").time("now-3h", "now").links(list(links)))
    for variable in [*datasource_variables(), *variables]:
        builder = builder.with_variable(variable)
    for row_title, panels, collapsed in rows:
        row = dash.Row(row_title).collapsed(collapsed)
        if collapsed:
            for panel in panels:
                row = row.with_panel(panel)
            builder = builder.with_row(row)
        else:
            builder = builder.with_row(row)
            for panel in panels:
                builder = builder.with_panel(panel)
    board = builder.build()
    number = 0
    for panel in board.panels:
        number += 1
        panel.id_val = number
        for inner in getattr(panel, "panels", None) or []:
            number += 1
            inner.id_val = number
    board.annotations = model.AnnotationContainer(list_val=list(annotations))
    board.schema_version = GRAFANA_SCHEMA_VERSION
    return board


def render(board):
    """The JSON text Grafana provisions (stable key order, so diffs stay small)."""
    return json.dumps(board, cls=JSONEncoder, indent=2) + "\n"
