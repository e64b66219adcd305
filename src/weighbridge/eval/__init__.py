"""The run loop and what it calls: jobs and their requests, lanes, judges and scoring, rescore and
pairwise on stored runs, the machine facts of a manifest."""
