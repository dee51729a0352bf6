"""The one exception type for bad user input that names a config key and its fix."""


class ConfigError(ValueError):
    """Invalid configuration or input data; the message names the config key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}. Fix: {fix}")
