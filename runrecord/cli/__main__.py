from runrecord.cli import run

run()
