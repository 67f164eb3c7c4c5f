"""CLaMP-DPO's pure parts: the DPOP loss and the chosen / rejected pair rules."""
