"""An interval keeps the network state of its security check (issue 15, the operator's page).

The operator's and the DSO's page draws the feeder map of the last check: node voltages and
branch loadings of the check's final round. Revision 0001 kept only whether the dispatch was
secure and in how many rounds; these two columns keep the state the DSO saw.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 03:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("interval") as batch:
        batch.add_column(sa.Column("node_vm_pu", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("branch_loading_pct", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("interval") as batch:
        batch.drop_column("branch_loading_pct")
        batch.drop_column("node_vm_pu")
