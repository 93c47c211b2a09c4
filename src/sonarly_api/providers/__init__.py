"""Where prospecting reads LinkedIn data: the provider interface (base.py) and its implementations."""
