"""What a run and a deployment cost: per-run cost figures, scenarios and price sheets, the deployment
cost arithmetic."""
