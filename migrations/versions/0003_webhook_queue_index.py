"""webhook queue index: (received_at, id) of unprocessed events, the drain's exact order

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 21:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _index(columns):
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_unprocessed',
                            postgresql_where=sa.text('processed_at IS NULL'),
                            sqlite_where=sa.text('processed_at IS NULL'))
        batch_op.create_index('ix_webhook_events_unprocessed', columns, unique=False,
                              postgresql_where=sa.text('processed_at IS NULL'),
                              sqlite_where=sa.text('processed_at IS NULL'))


def upgrade() -> None:
    _index(['received_at', 'id'])


def downgrade() -> None:
    _index(['received_at'])
