"""Sources and sinks, one folder per kind of endpoint; `registry` opens the right one for a URL."""
