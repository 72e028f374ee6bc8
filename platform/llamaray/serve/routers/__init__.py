"""One router per API; each route parses, calls its service and answers."""
