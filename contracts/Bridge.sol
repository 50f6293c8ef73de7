// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// The Alys peg-out bridge: burns the wrapped BTC sent with a request and logs where the
/// federation must pay it. Installed at 0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB.
contract Bridge {
    address public constant BURN = 0x000000000000000000000000000000000000dEaD;

    /// `_bitcoinAddress` is the UTF-8 text of the destination address; `_value` is in wei.
    event RequestPegOut(address indexed _evmAddress, bytes _bitcoinAddress, uint256 _value);

    function requestPegOut(bytes calldata bitcoinAddress) external payable {
        (bool sent, ) = BURN.call{value: msg.value}("");
        require(sent, "burn failed");
        emit RequestPegOut(msg.sender, bitcoinAddress, msg.value);
    }
}
