"""How a quant is measured against the merged model: tokenization probes, held-out logits and
the merged model's reference, the limits and their judging, gate-task recovery."""
