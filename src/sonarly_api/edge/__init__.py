"""The HTTP edge: what is refused before a route runs (request heads too large or too slow,
ambiguous or undecodable requests, too many connections) and the client address a budget uses."""
