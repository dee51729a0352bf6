"""The exception types for bad user input; each message names a config key and its fix."""


class ConfigError(ValueError):
    """Invalid configuration or input data; the message names the config key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class DivergedError(ConfigError):
    """Training produced NaN/Inf (loss, weights, EMA, optimiser state or monitored metric);
    ``key`` is the learning rate to lower. Nothing non-finite is written."""


class DataError(ConfigError):
    """A bad input file met while loading data (corrupt image, ...), on one line.

    Survives a DataLoader worker: torch re-raises a worker's exception as
    ``type(formatted_traceback)``; that one-argument form recovers the original message
    from the traceback's last line.
    """

    def __init__(self, key: str, problem: str | None = None, fix: str | None = None) -> None:
        if problem is None and fix is None:  # re-raised by torch from a worker process
            message = key.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
            self.key = message.split(": ", 1)[0]
            ValueError.__init__(self, message)
        else:
            super().__init__(key, " ".join(str(problem).split()), " ".join(str(fix).split()))
