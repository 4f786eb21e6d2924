"""The simulated world: parameters, the social graph, consumers, owners, the streamer,
brands and the platform, the funnel and its submodels, money, metrics and the daily
schedule (:mod:`sim.world.model`). Imports nothing outside itself (numpy, pandas, mesa
aside)."""
