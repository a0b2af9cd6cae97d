"""The embedded demo: a simulated shop backend, a fault injector and a live timeline.

    shop.py      the shop backend, run as a child process (`python -m agent.demo.shop`)
    data.py      its two SQLite files (shop.db, warehouse.db) and every write to them
    process.py   starts, kills and stops the shop child process from the demo
    faults.py    the fault timeline: slow / erroring / dead API, stock drift, stuck payments
    timeline.py  prints one line per probe result, and the faults, as they happen
    backlog.py   the command probe's script: pending orders and stuck payments
    runner.py    `run_demo()`: wires the shop, the agent, the injector and the timeline

Nothing here is imported by the agent itself; the demo is a user of the agent.
"""
