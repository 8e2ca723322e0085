"""block counter deltas: counters change by inserting rows, folded by the scheduler

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 21:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('block_counter_deltas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sequence_id', sa.Integer(), nullable=False),
    sa.Column('block_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['block_id'], ['blocks.id'], name=op.f('fk_block_counter_deltas_block_id_blocks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sequence_id'], ['sequences.id'], name=op.f('fk_block_counter_deltas_sequence_id_sequences'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_block_counter_deltas'))
    )
    with op.batch_alter_table('block_counter_deltas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_block_counter_deltas_sequence_id'), ['sequence_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('block_counter_deltas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_block_counter_deltas_sequence_id'))

    op.drop_table('block_counter_deltas')
