"""The games' egress policy: what a game container may reach (DESIGN.md "Containers (agent)").

``policy`` renders the nftables table from the bridge's name and the agent's settings (a pure
function: blocked ranges, the operator's ``egress_allow``, DNS resolvers, published ports);
``dns`` finds the resolvers dockerd forwards games' queries to; ``nft`` loads a ruleset in one
``nft -f -`` transaction; ``keeper`` loads it when the agent starts and again whenever a game
starts or stops (its published ports change). The table outlives the agent, as the games do;
``stellar-agent uninstall`` removes it.
"""
