"""Plans and credits: every account group's plan, and a balance moved only by its ledger."""
