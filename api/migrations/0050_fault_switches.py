"""Create fault_switches: the fire-drill switches every worker and node polls (api/faults.py).

One row per active kind (error, latency, readiness); a row whose expires_at has passed is
off. The model is a frozen copy, so later changes to api/faults.py never alter this step.
"""
from peewee import CharField, Check, DateTimeField, FloatField, IntegerField, Model


def upgrade(db):
    class FaultSwitch(Model):
        kind = CharField(max_length=16, primary_key=True,
                         constraints=[Check("kind IN ('error', 'latency', 'readiness')")])
        ratio = FloatField(constraints=[Check("ratio > 0 AND ratio <= 1")])
        latency_ms = IntegerField(default=0, constraints=[Check("latency_ms >= 0")])
        expires_at = DateTimeField()
        set_at = DateTimeField()

        class Meta:
            database = db
            table_name = "fault_switches"

    db.create_tables([FaultSwitch], safe=True)
