"""The recipe that trains the bundled shapes model from scratch (`python -m weights.build shapes`)."""
