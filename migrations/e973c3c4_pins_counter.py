"pins counter"

revision = "e973c3c4"
down_revision = "274c7a59"
message = "pins counter"


def upgrade(op):
    op.create_schema_metadata("pins")


def downgrade(op):
    op.drop_schema_metadata("pins")
