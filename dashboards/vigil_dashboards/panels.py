"""Panel and query constructors on grafana-foundation-sdk, carrying Vigil's dashboard conventions.

Every panel gets a description and a datasource variable (never a hard-coded datasource);
legends are tables with last and max; thresholds are drawn as dashed lines on graphs and as
colours on stats; one unit per panel (a panel never mixes seconds with events per second).
"""
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap as heatmap_panel
from grafana_foundation_sdk.builders import logs as logs_panel
from grafana_foundation_sdk.builders import loki, prometheus
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import text as text_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import prometheus as prometheus_model

PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The long-term Prometheus (90 days of the recording rules): the 30-day SLO budget lives there.
LONGTERM = model.DataSourceRef(type_val="prometheus", uid="${longterm}")
LOKI = model.DataSourceRef(type_val="loki", uid="${loki}")
# Grafana widens this to at least four scrape intervals, so rate() always has two samples.
RATE = "$__rate_interval"

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


def promql(expr, legend="", instant=False, table=False, heatmap=False):
    """One Prometheus query; refIds are given by the panel in order."""
    query = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto")
    if instant:
        query = query.instant()
    else:
        query = query.range()
    if table:
        query = query.format(prometheus_model.PromQueryFormat.TABLE)
    if heatmap:
        query = query.format(prometheus_model.PromQueryFormat.HEATMAP)
    return query


def logql(expr):
    return loki.Dataquery().expr(expr).query_type("range")


def _with_queries(panel, queries):
    for i, query in enumerate(queries):
        panel = panel.with_target(query.ref_id(chr(ord("A") + i)))
    return panel


def thresholds(*steps):
    """Threshold steps as (colour, value) pairs; the first pair is the base (value None)."""
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=colour) for colour, value in steps]))


def lines(*steps):
    """Threshold lines on a graph: an invisible base, then (colour, value) pairs."""
    return thresholds(("transparent", None), *steps)


def _common(panel, title, description, datasource, width, height, links, unit):
    if len(description) < 20:
        raise ValueError(f"{title}: every panel says what it shows and how to read it")
    panel = (panel.title(title).description(description).datasource(datasource)
             .span(width).height(height).unit(unit))
    if links:
        panel = panel.links(list(links))
    return panel


def timeseries(title, description, *queries, unit="short", steps=(), stack=False, links=(),
               data_links=(), width=12, height=8, soft_max=None, axis_label="", bars=False):
    """A graph. ``steps`` are threshold lines; ``queries`` share ``unit`` (one axis, one unit)."""
    panel = _common(timeseries_panel.Panel(), title, description, PROMETHEUS, width, height,
                    links, unit)
    panel = _with_queries(panel, queries)
    panel = (panel
             .legend(common_builders.VizLegendOptions()
                     .display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True)
                     .calcs(["lastNotNull", "max"]))
             .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING))
             .fill_opacity(10 if not stack else 35).line_width(1).show_points(
                 common.VisibilityMode.NEVER))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if stack:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if steps:
        panel = (panel.thresholds(lines(*steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED)))
    if soft_max is not None:
        panel = panel.axis_soft_max(soft_max)
    if axis_label:
        panel = panel.axis_label(axis_label)
    if data_links:
        panel = panel.data_links(list(data_links))
    return panel


def stat(title, description, query, unit="short", steps=((GREEN, None),), links=(), width=4,
         height=4, no_value=None, mappings=(), datasource=PROMETHEUS):
    """A single number, coloured by ``steps``; ``no_value`` is shown instead of "No data"."""
    panel = _common(stat_panel.Panel(), title, description, datasource, width, height, links,
                    unit)
    panel = (_with_queries(panel, [query]).thresholds(thresholds(*steps))
             .color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.AREA)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"])
                             .values(False)))
    if no_value is not None:
        panel = panel.no_value(no_value)
    if mappings:
        panel = panel.mappings(list(mappings))
    return panel


def value_text(value, text, colour):
    """A value mapping: show ``text`` in ``colour`` for ``value``."""
    return model.ValueMap(options={str(value): model.ValueMappingResult(text=text, color=colour)})


def heatmap(title, description, query, unit="s", width=12, height=8):
    """A heatmap of pre-bucketed histogram series (query format heatmap, no re-bucketing)."""
    panel = _common(heatmap_panel.Panel(), title, description, PROMETHEUS, width, height, (),
                    unit)
    return (_with_queries(panel, [query]).calculate(False)
            .y_axis(heatmap_panel.YAxisConfig().unit(unit))
            .color(heatmap_panel.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").fill("dark-orange")
                   .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL).exponent(0.5))
            .cell_values(heatmap_panel.CellValues().unit("reqps")))


def table(title, description, query, width=12, height=8, links=(), no_value=None):
    panel = _common(table_panel.Panel(), title, description, PROMETHEUS, width, height, links,
                    "short")
    panel = _with_queries(panel, [query]).with_transformation(model.DataTransformerConfig(
        id_val="organize", options={"excludeByName": {"Time": True, "__name__": True}}))
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def logs(title, description, expr, width=24, height=10, links=()):
    panel = _common(logs_panel.Panel(), title, description, LOKI, width, height, links, "short")
    return (_with_queries(panel, [logql(expr)]).show_time(True).wrap_log_message(True)
            .enable_log_details(True).prettify_log_message(True)
            .sort_order(common.LogsSortOrder.DESCENDING))


def markdown(title, description, content, width=6, height=4):
    """A text panel: where to look next. Grafana fills in ${variables} in the markdown."""
    panel = (text_panel.Panel().title(title).description(description).span(width)
             .height(height).mode("markdown").content(content))
    return panel


def alert_list(title, description, width=16, height=8, links=()):
    """Grafana's alert list over every rule source: Prometheus' rules and Loki's ruler rules.

    The SDK has no builder for this core panel, so it is the generic panel with the options of
    Grafana's alertlist plugin (public/app/plugins/panel/alertlist/types.ts). Grafana lists
    data-source rules only for data sources with `manageAlerts: true` (provisioning/datasources).
    """
    options = {
        "viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 30,
        "sortOrder": 3,  # importance: firing first
        "dashboardAlerts": False, "alertName": "", "alertInstanceLabelFilter": "",
        "datasource": "",  # every rule source
        "folder": {"uid": "", "title": ""}, "showInstances": True, "showInactiveAlerts": False,
        "stateFilter": {"firing": True, "pending": True, "recovering": True, "noData": True,
                        "error": True, "normal": False},
    }
    panel = (dash.Panel().type("alertlist").title(title).description(description)
             .span(width).height(height).options(options))
    if links:
        panel = panel.links(list(links))
    return panel


def row(title, *panels, collapsed=False):
    """A row and the panels under it (inside the row only when it starts collapsed)."""
    return title, list(panels), collapsed
