"""What the commands other than the syncs compute: checks, status, the queue table, the
field report, crontab lines and the demo. Each returns data; the CLI renders it."""
