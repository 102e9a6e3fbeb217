"""Operator commands (CLI, HTTP, web console) validated into control events."""
