"""people: email and team indexes, counters"""

revision = "274c7a59"
down_revision = None
message = "people: email and team indexes, counters"


def upgrade(op):
    op.create_index("people", "email")
    op.create_index("people", "team")
    op.create_schema_metadata("people")
    op.create_schema_metadata("people", by=("team",))


def downgrade(op):
    op.drop_schema_metadata("people", by=("team",))
    op.drop_schema_metadata("people")
    op.drop_index("people", "team")
    op.drop_index("people", "email")
