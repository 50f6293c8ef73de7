// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IBridge {
    function requestPegOut(bytes calldata bitcoinAddress) external payable;
}

/// Test only: a contract wallet that makes peg-out requests, several per transaction. The
/// bridge's log is what counts, whoever called it.
contract Forwarder {
    function forward(address bridge, bytes[] calldata addresses, uint256 each) external payable {
        for (uint256 i = 0; i < addresses.length; i++) {
            IBridge(bridge).requestPegOut{value: each}(addresses[i]);
        }
    }
}
